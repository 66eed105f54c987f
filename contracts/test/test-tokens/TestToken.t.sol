// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";

import {TestToken} from "../../src/test-tokens/TestToken.sol";

contract TestTokenTest is Test {
    function test_decimalsAndMint() public {
        TestToken usdc = new TestToken("USD Coin (test)", "USDC", 6);
        assertEq(usdc.decimals(), 6);
        usdc.mint(address(1), 5e6);
        assertEq(usdc.balanceOf(address(1)), 5e6);
    }

    function test_refusesNonLocalChains() public {
        vm.chainId(1);
        vm.expectRevert(abi.encodeWithSelector(TestToken.LocalChainOnly.selector, 1));
        new TestToken("USD Coin (test)", "USDC", 6);
        vm.chainId(1337);
        new TestToken("USD Coin (test)", "USDC", 6);
    }
}
