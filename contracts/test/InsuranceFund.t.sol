// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {InsuranceFund} from "../src/InsuranceFund.sol";
import {HxBase} from "./helpers/HxBase.sol";

contract InsuranceFundTest is HxBase {
    /// `amount` of alice's USDC moved into the fund (queued by a batch, paid after its window).
    function _funded(uint256 amount) internal {
        _deposit(alice, address(usdc), amount);
        _submit();
        _feeToFund(alice, address(usdc), amount);
        _submit();
        _payOut();
    }

    function test_batchPaths_onlyClearingHouse() public {
        _funded(100e6);
        address[4] memory callers = [address(timelock), guardian, operator, governor];
        for (uint256 i; i < callers.length; ++i) {
            vm.startPrank(callers[i]);
            vm.expectRevert(abi.encodeWithSelector(InsuranceFund.NotClearingHouse.selector, callers[i]));
            fund.recordInflow(1, address(usdc), 1);
            vm.expectRevert(abi.encodeWithSelector(InsuranceFund.NotClearingHouse.selector, callers[i]));
            fund.payToVault(1, address(usdc), 1);
            vm.stopPrank();
        }
        assertEq(fund.expectedBalance(address(usdc)), 100e6);
    }

    function test_recordInflow_revertsWhenUnbacked() public {
        vm.expectRevert(abi.encodeWithSelector(InsuranceFund.UnbackedInflow.selector, address(usdc), 1));
        vm.prank(address(ch));
        fund.recordInflow(1, address(usdc), 1);
    }

    function test_governanceWithdraw_onlyThroughTimelock() public {
        _funded(100e6);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, governor, fund.DEFAULT_ADMIN_ROLE()
            )
        );
        vm.prank(governor);
        fund.withdraw(address(usdc), governor, 1);

        _governance(address(fund), abi.encodeCall(InsuranceFund.withdraw, (address(usdc), dave, 40e6)));
        assertEq(usdc.balanceOf(dave), 40e6);
        assertEq(fund.expectedBalance(address(usdc)), 60e6);

        vm.startPrank(address(timelock));
        vm.expectRevert(
            abi.encodeWithSelector(InsuranceFund.InsufficientFundBalance.selector, address(usdc), 61e6, 60e6)
        );
        fund.withdraw(address(usdc), dave, 61e6);
        vm.expectRevert(InsuranceFund.ZeroAmount.selector);
        fund.withdraw(address(usdc), dave, 0);
        vm.expectRevert(InsuranceFund.ZeroAddress.selector);
        fund.withdraw(address(usdc), address(0), 1);
        vm.expectEmit(address(fund));
        emit InsuranceFund.GovernanceWithdrawal(address(usdc), dave, 60e6, 0);
        fund.withdraw(address(usdc), dave, 60e6);
        vm.stopPrank();
    }

    /// Tokens sent directly are surplus: the engine-facing balance moves only when governance absorbs them.
    function test_directTransferIsSurplus_untilAbsorbed() public {
        _funded(100e6);
        usdc.mint(address(fund), 5e6);
        assertEq(fund.expectedBalance(address(usdc)), 100e6);
        assertEq(fund.surplus(address(usdc)), 5e6);
        vm.expectEmit(address(fund));
        emit InsuranceFund.SurplusAbsorbed(address(usdc), 5e6, 105e6);
        vm.prank(address(timelock));
        fund.absorbSurplus(address(usdc));
        assertEq(fund.expectedBalance(address(usdc)), 105e6);
        vm.expectRevert(InsuranceFund.ZeroAmount.selector);
        vm.prank(address(timelock));
        fund.absorbSurplus(address(usdc));
    }

    function test_constructor_revertsOnZeroAddress() public {
        vm.expectRevert(InsuranceFund.ZeroAddress.selector);
        new InsuranceFund(address(0), address(vault), address(timelock));
    }
}
