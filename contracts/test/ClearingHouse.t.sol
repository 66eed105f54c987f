// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

import {ClearingHouse} from "../src/ClearingHouse.sol";
import {InsuranceFund} from "../src/InsuranceFund.sol";
import {Vault} from "../src/Vault.sol";
import {HxTimelock} from "../src/governance/HxTimelock.sol";
import {SumTree} from "../src/libraries/SumTree.sol";
import {HxBase} from "./helpers/HxBase.sol";
import {TreeBuilder} from "./helpers/TreeBuilder.sol";

contract ClearingHouseTest is HxBase {
    using TreeBuilder for TreeBuilder.Tree;

    /// alice 10,000 USDC, bob 5 WETH, carol 2,500 USDC, credited by batch 1.
    function _seed() internal {
        _deposit(alice, address(usdc), 10_000e6);
        _deposit(bob, address(weth), 5e18);
        _deposit(carol, address(usdc), 2500e6);
        _submit();
    }

    /// Submit `b` as the operator expecting `err`, and check nothing changed.
    function _rejects(ClearingHouse.Batch memory b, bytes memory err) internal {
        bytes32 before = _digest();
        vm.expectRevert(err);
        vm.prank(operator);
        ch.submitBatch(b);
        assertEq(_digest(), before, "state unchanged");
    }

    // ------------------------------------------------------------------ constructor

    function test_constructor_revertsWhenNotWired() public {
        address[] memory none = new address[](0);
        Vault stray = new Vault(address(0xdead), address(timelock), guardian, none);
        vm.expectRevert(ClearingHouse.NotWired.selector);
        new ClearingHouse(stray, fund, address(timelock), operator, guardian, FREEZE_PERIOD);
    }

    function test_constructor_revertsOnZeroAddress() public {
        vm.expectRevert(ClearingHouse.ZeroAddress.selector);
        new ClearingHouse(vault, fund, address(timelock), address(0), guardian, FREEZE_PERIOD);
    }

    function _wire(uint256 delay, uint256 freezePeriod) internal returns (bytes memory) {
        HxTimelock tl = new HxTimelock(delay, governor);
        address predicted = vm.computeCreateAddress(address(this), vm.getNonce(address(this)) + 2);
        Vault v = new Vault(predicted, address(tl), guardian, tokens);
        InsuranceFund f = new InsuranceFund(predicted, address(v), address(tl));
        try new ClearingHouse(v, f, address(tl), operator, guardian, freezePeriod) returns (ClearingHouse) {
            return "";
        } catch (bytes memory err) {
            return err;
        }
    }

    function test_constructor_requiresTimelockDelayAboveFreezePeriod() public {
        assertEq(
            _wire(3 days, 3 days),
            abi.encodeWithSelector(ClearingHouse.DelayNotAboveFreezePeriod.selector, 3 days, 3 days)
        );
        assertEq(_wire(3 days, 0), abi.encodeWithSelector(ClearingHouse.ZeroFreezePeriod.selector));
        assertEq(_wire(3 days + 1, 3 days), "");
    }

    function test_constructor_roles() public view {
        assertTrue(ch.hasRole(ch.DEFAULT_ADMIN_ROLE(), address(timelock)));
        assertTrue(ch.hasRole(ch.OPERATOR_ROLE(), operator));
        assertTrue(ch.hasRole(ch.GUARDIAN_ROLE(), guardian));
        assertFalse(ch.hasRole(ch.DEFAULT_ADMIN_ROLE(), address(this)));
        assertFalse(ch.hasRole(ch.OPERATOR_ROLE(), address(this)));
        assertEq(ch.freezePeriod(), FREEZE_PERIOD);
        assertGt(timelock.getMinDelay(), ch.freezePeriod());
    }

    // ------------------------------------------------------------------ accepted batches

    function test_submitBatch_creditsDeposits_provesSolvency_emitsBatchAccepted() public {
        _deposit(alice, address(usdc), 10_000e6);
        _deposit(bob, address(weth), 5e18);
        ClearingHouse.Batch memory b = _batch();
        bytes32 stateRoot = keccak256(abi.encode(b.assets));
        bytes32 expected = keccak256(
            abi.encode(
                ch.BATCH_DOMAIN(),
                block.chainid,
                address(ch),
                uint64(1),
                bytes32(0),
                stateRoot,
                keccak256(b.data),
                uint48(2),
                keccak256(
                    abi.encode(keccak256(abi.encode(b.withdrawals)), keccak256(abi.encode(b.insuranceMoves)))
                )
            )
        );
        assertEq(ch.hashBatch(b, stateRoot), expected);
        vm.expectEmit(address(ch));
        emit ClearingHouse.BatchAccepted(1, expected, stateRoot);
        assertEq(_submit(b), expected);
        assertEq(ch.lastBatchId(), 1);
        assertEq(ch.lastBatchHash(), expected);
        assertEq(ch.lastStateRoot(), stateRoot);
        assertEq(ch.lastCreditedDepositId(), 2);
        assertEq(ch.accountHoldings(address(usdc)), 10_000e6);
        assertEq(ch.accountHoldings(address(weth)), 5e18);
        assertEq(ch.accountHoldings(address(wbtc)), 0);
    }

    function test_submitBatch_hashesChain() public {
        _seed();
        bytes32 h1 = ch.lastBatchHash();
        ClearingHouse.Batch memory b = _batch();
        assertEq(b.prevBatchHash, h1);
        bytes32 h2 = _submit(b);
        assertTrue(h2 != h1);
        assertEq(_batch().prevBatchHash, h2);
        _submit();
        assertEq(ch.lastBatchId(), 3);
    }

    function test_submitBatch_resetsFreezeClock() public {
        _seed();
        vm.warp(block.timestamp + FREEZE_PERIOD - 1);
        _submit();
        vm.warp(block.timestamp + FREEZE_PERIOD - 1);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.NotStale.selector, block.timestamp + 1));
        ch.freeze();
    }

    function test_submitBatch_partialDepositCredit() public {
        _deposit(alice, address(usdc), 100e6);
        uint48 d2 = _depositUncredited(bob, address(usdc), 50e6); // not yet confirmed by the engine
        ClearingHouse.Batch memory b = _batch();
        b.lastCreditedDepositId = d2 - 1;
        _submit(b);
        assertEq(ch.accountHoldings(address(usdc)), 100e6);
        assertEq(ch.lastCreditedDepositId(), 1);
        bal[address(usdc)][bob] += 50e6; // now credited
        _submit();
        assertEq(ch.accountHoldings(address(usdc)), 150e6);
    }

    function test_submitBatch_withdrawalsPaidExactlyOnce() public {
        _seed();
        _withdraw(alice, address(usdc), 1000e6);
        _withdraw(bob, address(weth), 1e18);
        vm.expectEmit(address(ch));
        emit ClearingHouse.WithdrawalPaid(2, 1, alice, address(usdc), 1000e6);
        vm.expectEmit(address(ch));
        emit ClearingHouse.WithdrawalPaid(2, 2, bob, address(weth), 1e18);
        ClearingHouse.Batch memory b = _batch();
        _submit(b);
        assertEq(usdc.balanceOf(alice), 1000e6);
        assertEq(weth.balanceOf(bob), 1e18);
        assertEq(ch.lastWithdrawalId(), 2);
        assertEq(ch.accountHoldings(address(usdc)), 11_500e6);

        // The same withdrawals in the next batch: their ids are spent.
        ClearingHouse.Batch memory again = _batch();
        again.withdrawals = b.withdrawals;
        _rejects(again, abi.encodeWithSelector(ClearingHouse.WithdrawalIdNotNext.selector, 3, 1));
    }

    function test_submitBatch_insuranceMoves_bothWays() public {
        _seed();
        _feeToFund(alice, address(usdc), 300e6); // fees / liquidation surplus into the fund
        vm.expectEmit(address(fund));
        emit InsuranceFund.BatchInflow(2, address(usdc), 300e6, 300e6);
        _submit();
        assertEq(fund.expectedBalance(address(usdc)), 300e6);
        assertEq(usdc.balanceOf(address(fund)), 300e6);
        assertEq(usdc.balanceOf(address(vault)), 12_200e6);
        assertEq(ch.accountHoldings(address(usdc)), 12_200e6);

        _coverFromFund(carol, address(usdc), 120e6); // fund covers a bankrupt account's loss
        vm.expectEmit(address(fund));
        emit InsuranceFund.BatchOutflow(3, address(usdc), 120e6, 180e6);
        _submit();
        assertEq(fund.expectedBalance(address(usdc)), 180e6);
        assertEq(usdc.balanceOf(address(vault)), 12_320e6);
        assertEq(ch.accountHoldings(address(usdc)), 12_320e6);
    }

    function test_submitBatch_newlyListedTokenMustBeCommitted() public {
        _seed();
        address extra = address(new HxTimelock(1, governor)); // any contract address will do as a token id
        vm.prank(address(timelock));
        vault.listToken(extra);
        ClearingHouse.Batch memory b = _batch(); // _assets() follows vault.listedTokens()
        ClearingHouse.AssetCommitment[] memory short = new ClearingHouse.AssetCommitment[](3);
        for (uint256 i; i < 3; ++i) {
            short[i] = b.assets[i];
        }
        ClearingHouse.Batch memory bad = _batch();
        bad.assets = short;
        _rejects(bad, abi.encodeWithSelector(ClearingHouse.AssetListMismatch.selector));
        _submit(b);
    }

    // ------------------------------------------------------------------ bad input: each its own error

    function test_reject_nonOperator() public {
        _seed();
        ClearingHouse.Batch memory b = _batch();
        address[4] memory who = [alice, guardian, address(timelock), governor];
        for (uint256 i; i < who.length; ++i) {
            bytes32 before = _digest();
            vm.expectRevert(
                abi.encodeWithSelector(
                    IAccessControl.AccessControlUnauthorizedAccount.selector, who[i], ch.OPERATOR_ROLE()
                )
            );
            vm.prank(who[i]);
            ch.submitBatch(b);
            assertEq(_digest(), before);
        }
    }

    function test_reject_gappedBatchId() public {
        _seed();
        ClearingHouse.Batch memory b = _batch();
        b.batchId = 3;
        _rejects(b, abi.encodeWithSelector(ClearingHouse.BatchIdNotNext.selector, 2, 3));
    }

    function test_reject_replayedBatchId() public {
        _deposit(alice, address(usdc), 1e6);
        ClearingHouse.Batch memory b = _batch();
        _submit(b);
        _rejects(b, abi.encodeWithSelector(ClearingHouse.BatchIdNotNext.selector, 2, 1));
    }

    function test_reject_wrongPrevHash() public {
        _seed();
        ClearingHouse.Batch memory b = _batch();
        b.prevBatchHash = keccak256("fork");
        _rejects(
            b,
            abi.encodeWithSelector(
                ClearingHouse.PrevBatchHashMismatch.selector, ch.lastBatchHash(), b.prevBatchHash
            )
        );
    }

    function test_reject_depositIdRegressed_orNotMade() public {
        _seed();
        ClearingHouse.Batch memory b = _batch();
        b.lastCreditedDepositId = 2;
        _rejects(b, abi.encodeWithSelector(ClearingHouse.DepositIdRegressed.selector, 3, 2));
        b.lastCreditedDepositId = 4;
        _rejects(b, abi.encodeWithSelector(ClearingHouse.DepositNotMade.selector, 3, 4));
    }

    function test_reject_assetListMismatch() public {
        _seed();
        ClearingHouse.Batch memory b = _batch();
        (b.assets[0], b.assets[1]) = (b.assets[1], b.assets[0]);
        _rejects(b, abi.encodeWithSelector(ClearingHouse.AssetListMismatch.selector));
    }

    function test_reject_totalsNotMatchingVault() public {
        _seed();
        ClearingHouse.Batch memory b = _batch();
        b.assets[0].total += 1; // claims more than the vault holds for accounts
        _rejects(
            b,
            abi.encodeWithSelector(
                ClearingHouse.TotalMismatch.selector, address(usdc), 12_500e6 + 1, 12_500e6
            )
        );
        b.assets[0].total -= 2; // or less: money would vanish from the books
        _rejects(
            b,
            abi.encodeWithSelector(
                ClearingHouse.TotalMismatch.selector, address(usdc), 12_500e6 - 1, 12_500e6
            )
        );
    }

    function test_reject_uncreditedDepositCounted() public {
        _seed();
        _deposit(dave, address(usdc), 1e6); // model credits it ...
        ClearingHouse.Batch memory b = _batch();
        b.lastCreditedDepositId = 3; // ... but the batch does not
        _rejects(
            b, abi.encodeWithSelector(ClearingHouse.TotalMismatch.selector, address(usdc), 12_501e6, 12_500e6)
        );
    }

    function test_reject_withdrawalAboveBalance() public {
        _seed();
        ClearingHouse.Batch memory b = _batch();
        b.withdrawals = new ClearingHouse.Withdrawal[](1);
        b.withdrawals[0] = ClearingHouse.Withdrawal(1, bob, address(weth), 5e18 + 1);
        _rejects(
            b, abi.encodeWithSelector(ClearingHouse.WithdrawalExceedsHoldings.selector, 1, 5e18 + 1, 5e18)
        );
    }

    function test_reject_withdrawalUnlistedToken() public {
        _seed();
        ClearingHouse.Batch memory b = _batch();
        b.withdrawals = new ClearingHouse.Withdrawal[](1);
        b.withdrawals[0] = ClearingHouse.Withdrawal(1, bob, address(0xbad), 1);
        _rejects(b, abi.encodeWithSelector(ClearingHouse.TokenNotListed.selector, address(0xbad)));
    }

    function test_reject_withdrawalIdGap_zeroAmount_zeroAccount() public {
        _seed();
        ClearingHouse.Batch memory b = _batch();
        b.withdrawals = new ClearingHouse.Withdrawal[](1);
        b.withdrawals[0] = ClearingHouse.Withdrawal(2, bob, address(weth), 1);
        _rejects(b, abi.encodeWithSelector(ClearingHouse.WithdrawalIdNotNext.selector, 1, 2));
        b.withdrawals[0] = ClearingHouse.Withdrawal(1, bob, address(weth), 0);
        _rejects(b, abi.encodeWithSelector(ClearingHouse.ZeroAmount.selector));
        b.withdrawals[0] = ClearingHouse.Withdrawal(1, address(0), address(weth), 1);
        _rejects(b, abi.encodeWithSelector(ClearingHouse.ZeroAddress.selector));
    }

    function test_reject_insuranceMoves() public {
        _seed();
        ClearingHouse.Batch memory b = _batch();
        b.insuranceMoves = new ClearingHouse.InsuranceMove[](1);
        b.insuranceMoves[0] = ClearingHouse.InsuranceMove(address(0xbad), 1);
        _rejects(b, abi.encodeWithSelector(ClearingHouse.TokenNotListed.selector, address(0xbad)));
        b.insuranceMoves[0] = ClearingHouse.InsuranceMove(address(usdc), 0);
        _rejects(b, abi.encodeWithSelector(ClearingHouse.ZeroAmount.selector));
        b.insuranceMoves[0] = ClearingHouse.InsuranceMove(address(usdc), 12_500e6 + 1);
        _rejects(
            b,
            abi.encodeWithSelector(
                ClearingHouse.InsuranceMoveExceedsHoldings.selector, address(usdc), 12_500e6 + 1, 12_500e6
            )
        );
        b.insuranceMoves[0] = ClearingHouse.InsuranceMove(address(usdc), -1);
        _rejects(
            b, abi.encodeWithSelector(InsuranceFund.InsufficientFundBalance.selector, address(usdc), 1, 0)
        );
    }

    function test_reject_whenPaused() public {
        _seed();
        vm.prank(guardian);
        ch.pause();
        _rejects(_batch(), abi.encodeWithSelector(Pausable.EnforcedPause.selector));
        _governance(address(ch), abi.encodeCall(ClearingHouse.unpause, ()));
        _submit(); // the timelock took longer than the freeze period, but nobody froze: batches resume
    }

    function test_reject_whenFrozen() public {
        _seed();
        _freeze();
        _rejects(_batch(), abi.encodeWithSelector(ClearingHouse.ExchangeFrozen.selector));
    }

    // ------------------------------------------------------------------ freeze

    function test_freeze_onlyWhenStale_byAnyone_once() public {
        _seed();
        uint256 at = uint256(ch.lastBatchAt()) + FREEZE_PERIOD;
        vm.warp(at - 1);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.NotStale.selector, at));
        ch.freeze();
        vm.warp(at);
        vm.expectEmit(address(ch));
        emit ClearingHouse.Frozen(1, ch.lastStateRoot(), dave);
        vm.prank(dave);
        ch.freeze();
        assertTrue(ch.frozen());
        vm.expectRevert(ClearingHouse.ExchangeFrozen.selector);
        ch.freeze();
    }

    // ------------------------------------------------------------------ escape hatch

    function test_escape_eachAccountExitsItsLeafOnce() public {
        _seed();
        _freeze();
        assertEq(_escape(alice, address(usdc)), 10_000e6);
        assertEq(usdc.balanceOf(alice), 10_000e6);
        assertEq(_escape(bob, address(weth)), 5e18);
        assertEq(weth.balanceOf(bob), 5e18);
        assertEq(_escape(carol, address(usdc)), 2500e6);
        assertEq(ch.escapedTotal(address(usdc)), 12_500e6);
        assertEq(ch.accountHoldings(address(usdc)), 0);
        assertEq(usdc.balanceOf(address(vault)), 0);

        SumTree.Node[] memory p = _tree(address(usdc)).proof(0);
        ClearingHouse.AssetCommitment[] memory a = _assets();
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.AlreadyEscaped.selector, alice, address(usdc)));
        vm.prank(alice);
        ch.escapeWithdraw(a, 0, 10_000e6, 0, p, alice);
    }

    function test_escape_zeroLeafMarksExited() public {
        _seed();
        _freeze();
        vm.expectEmit(address(ch));
        emit ClearingHouse.EscapeWithdrawal(dave, address(usdc), 0, dave);
        _escape(dave, address(usdc));
        assertTrue(ch.escaped(dave, address(usdc)));
    }

    function test_escape_reverts_beforeFreeze() public {
        _seed();
        SumTree.Node[] memory p = _tree(address(usdc)).proof(0);
        ClearingHouse.AssetCommitment[] memory a = _assets();
        vm.expectRevert(ClearingHouse.ExchangeNotFrozen.selector);
        vm.prank(alice);
        ch.escapeWithdraw(a, 0, 10_000e6, 0, p, alice);
    }

    function test_escape_reverts_proofForWrongRoot() public {
        _seed();
        TreeBuilder.Tree memory old = _tree(address(usdc));
        _withdraw(alice, address(usdc), 4000e6);
        _submit();
        _freeze();
        // alice replays her proof of 10,000 from batch 1 against the root of batch 2
        ClearingHouse.AssetCommitment[] memory a = _assets();
        bytes32 before = _digest();
        vm.expectRevert(ClearingHouse.InvalidProof.selector);
        vm.prank(alice);
        ch.escapeWithdraw(a, 0, 10_000e6, 0, old.proof(0), alice);
        // and cannot pass batch 1's asset list either
        ClearingHouse.AssetCommitment[] memory oldAssets = _assets();
        oldAssets[0].root = old.root();
        oldAssets[0].total = old.total();
        vm.expectRevert(
            abi.encodeWithSelector(
                ClearingHouse.StateRootMismatch.selector, ch.lastStateRoot(), keccak256(abi.encode(oldAssets))
            )
        );
        vm.prank(alice);
        ch.escapeWithdraw(oldAssets, 0, 10_000e6, 0, old.proof(0), alice);
        assertEq(_digest(), before);
        assertEq(_escape(alice, address(usdc)), 6000e6);
    }

    function test_escape_reverts_inflatedAmount_otherAccount_badIndex_zeroTo() public {
        _seed();
        _freeze();
        SumTree.Node[] memory p = _tree(address(usdc)).proof(0);
        ClearingHouse.AssetCommitment[] memory a = _assets();
        vm.startPrank(alice);
        vm.expectRevert(ClearingHouse.InvalidProof.selector);
        ch.escapeWithdraw(a, 0, 10_000e6 + 1, 0, p, alice);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.AssetIndexOutOfRange.selector, 3));
        ch.escapeWithdraw(a, 3, 10_000e6, 0, p, alice);
        vm.expectRevert(ClearingHouse.ZeroAddress.selector);
        ch.escapeWithdraw(a, 0, 10_000e6, 0, p, address(0));
        vm.stopPrank();
        vm.expectRevert(ClearingHouse.InvalidProof.selector); // bob cannot take alice's leaf
        vm.prank(bob);
        ch.escapeWithdraw(a, 0, 10_000e6, 0, p, bob);
    }

    /// The guardian pauses everything it can; it still cannot stop freeze, escapes, reclaims or claims.
    function test_guardian_cannotBlockExits() public {
        _seed();
        uint48 late = _depositUncredited(dave, address(weth), 1e18);
        vm.startPrank(guardian);
        ch.pause();
        vault.pause();
        vm.stopPrank();
        _freeze();
        _escape(alice, address(usdc));
        _escape(bob, address(weth));
        vm.prank(dave);
        ch.reclaimDeposit(late, address(weth), 1e18, dave);
        assertEq(weth.balanceOf(dave), 1e18);
        assertEq(usdc.balanceOf(alice), 10_000e6);
    }

    // ------------------------------------------------------------------ reclaiming uncredited deposits

    function test_reclaim_uncreditedDeposit() public {
        _seed();
        uint48 id = _depositUncredited(dave, address(usdc), 77e6);
        vm.expectRevert(ClearingHouse.ExchangeNotFrozen.selector);
        vm.prank(dave);
        ch.reclaimDeposit(id, address(usdc), 77e6, dave);
        _freeze();
        vm.startPrank(dave);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.DepositMismatch.selector, id));
        ch.reclaimDeposit(id, address(usdc), 78e6, dave);
        vm.expectEmit(address(ch));
        emit ClearingHouse.DepositReclaimed(id, dave, address(usdc), 77e6);
        ch.reclaimDeposit(id, address(usdc), 77e6, dave);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.AlreadyReclaimed.selector, id));
        ch.reclaimDeposit(id, address(usdc), 77e6, dave);
        vm.stopPrank();
        assertEq(usdc.balanceOf(dave), 77e6);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.DepositWasCredited.selector, 1));
        vm.prank(alice);
        ch.reclaimDeposit(1, address(usdc), 10_000e6, alice);
    }

    function test_reclaim_whenNoBatchEverAccepted() public {
        uint48 id = _depositUncredited(alice, address(usdc), 5e6);
        vm.warp(block.timestamp + FREEZE_PERIOD);
        ch.freeze();
        vm.prank(alice);
        ch.reclaimDeposit(id, address(usdc), 5e6, alice);
        assertEq(usdc.balanceOf(alice), 5e6);
    }

    // ------------------------------------------------------------------ fuzz

    /// Any deposits, withdrawals and fund movements the engine can make are accepted, and the vault then
    /// holds exactly the committed totals (+ pending payouts, + nothing else).
    function testFuzz_batchAccepted_andVaultMatchesTotals(
        uint96 d0,
        uint96 d1,
        uint96 w0,
        uint96 fee,
        uint96 cover
    ) public {
        d0 = uint96(bound(d0, 1, 1e30));
        d1 = uint96(bound(d1, 1, 1e30));
        _deposit(alice, address(usdc), d0);
        _deposit(bob, address(usdc), d1);
        _submit();
        w0 = uint96(bound(w0, 0, d0));
        if (w0 > 0) _withdraw(alice, address(usdc), w0);
        fee = uint96(bound(fee, 0, d1));
        if (fee > 0) _feeToFund(bob, address(usdc), fee);
        _submit();
        cover = uint96(bound(cover, 0, fee));
        if (cover > 0) _coverFromFund(carol, address(usdc), cover);
        _submit();
        uint256 holdings = uint256(d0) + d1 - w0 - fee + cover;
        assertEq(ch.accountHoldings(address(usdc)), holdings);
        assertEq(usdc.balanceOf(address(vault)), holdings);
        assertEq(fund.expectedBalance(address(usdc)), uint256(fee) - cover);
    }

    /// Any total other than the holdings is rejected.
    function testFuzz_anyWrongTotalRejected(uint256 committed) public {
        _seed();
        vm.assume(committed != 12_500e6);
        ClearingHouse.Batch memory b = _batch();
        b.assets[0].total = committed;
        _rejects(
            b,
            abi.encodeWithSelector(ClearingHouse.TotalMismatch.selector, address(usdc), committed, 12_500e6)
        );
    }

    /// After a freeze each account gets exactly its leaf, whatever the balances.
    function testFuzz_escapePaysExactlyTheLeaf(uint96 a, uint96 b, uint96 c, uint96 w) public {
        a = uint96(bound(a, 1, 1e30));
        _deposit(alice, address(usdc), a);
        _deposit(bob, address(usdc), bound(b, 1, 1e30));
        _deposit(carol, address(usdc), bound(c, 1, 1e30));
        _submit();
        _withdraw(alice, address(usdc), bound(w, 0, a - 1) + 1);
        _submit();
        _freeze();
        uint256 vaultBefore = usdc.balanceOf(address(vault));
        for (uint256 i; i < 3; ++i) {
            address who = actors[i];
            uint256 before = usdc.balanceOf(who);
            uint256 leaf = _escape(who, address(usdc));
            assertEq(usdc.balanceOf(who) - before, leaf);
            assertEq(leaf, bal[address(usdc)][who]);
        }
        assertEq(vaultBefore - usdc.balanceOf(address(vault)), ch.escapedTotal(address(usdc)));
        assertEq(usdc.balanceOf(address(vault)), 0);
    }
}
